# goq's wire message for the `capnp` codec: one struct mirroring goq_core.messages.Message.
# Kind and JobState travel as their integer values (see messages.py); the codec checks them,
# so a new member of either needs no change here.
#
# Every string travels as Data holding str.encode("utf-8", "surrogatepass"), not as Text:
# Linux argv, environments and paths are bytes, which Python hands over as str with lone
# surrogates for undecodable bytes (surrogateescape), and capnp Text must be valid UTF-8.
# Data carries any str losslessly; the codec decodes it with "surrogatepass" and refuses
# anything else (invalid UTF-8) with CodecError.

@0xce2236abf8b75156;

struct Job {
  jobid @0 :Int64;
  cmd @1 :Data;            # str (see above), as are all Data fields but Message.nonce/replyTo/data
  args @2 :List(Data);
  shell @3 :Bool;
  dir @4 :Data;
  env @5 :List(Data);      # "NAME=value" entries
  host @6 :Data;
  user @7 :Data;
  state @8 :UInt8;         # goq_core.messages.JobState
  attempt @9 :Int64;
  workerid @10 :Data;
  workerhost @11 :Data;
  pid @12 :Int64;
  exitStatus @13 :Int64;   # exit code, or -N for signal N
  submitNs @14 :Int64;
  startNs @15 :Int64;
  endNs @16 :Int64;
  outBytes @17 :Int64;
  note @18 :Data;          # what the server says about the record (e.g. where output went)
  # what the job asks for (on a worker's offer: what the worker has)
  cpus @19 :Int64 = 1;
  mem @20 :Int64;          # bytes
  gpus @21 :Int64;
  resources @22 :List(Counter);  # named counters: name (str, as above) and value
  priority @23 :Int64;     # higher runs first
  gpuIds @24 :Data;        # the GPUs given to this run, comma-separated
  # workflow (design.md §7): names, dependencies, arrays, retries, time limits
  name @25 :Data;          # several jobs may share one
  after @26 :List(Int64);  # job ids (each >= 0) that must all have succeeded first
  afterAny @27 :List(Int64);  # job ids (each >= 0) that must all have ended first
  arrayId @28 :Int64;      # the first job id of its array (0: not in an array)
  arrayIndex @29 :Int64;   # its index in the array
  arrayMax @30 :Int64;     # at most this many of its array run at once (0: no cap)
  retries @31 :Int64;      # runs again up to this many times after a failure
  retryDelayMs @32 :Int64;
  retried @33 :Int64;      # retries used so far
  timeLimitMs @34 :Int64;  # 0: no limit
  outBase @35 :Int64;      # bytes of its output written by earlier attempts
  owner @36 :Data;         # the principal that submitted it (set by the server)
}

struct Counter {           # a counter of Message, or a named resource of Job
  name @0 :Data;
  value @1 :Int64;
}

struct Message {
  kind @0 :UInt8;          # goq_core.messages.Kind
  nonce @1 :Data;          # bytes
  sendtimeNs @2 :Int64;
  replyTo @3 :Data;        # bytes
  workerid @4 :Data;
  host @5 :Data;
  jobid @6 :Int64;
  attempt @7 :Int64;
  count @8 :Int64;
  waitMs @9 :Int64;
  offset @10 :Int64;
  data @11 :Data;          # bytes: a chunk of job output
  text @12 :Data;
  jobs @13 :List(Job);
  counters @14 :List(Counter);
}
