# goq's wire message for the `capnp` codec: one struct mirroring goq_core.messages.Message.
# Kind and JobState travel as their integer values (see messages.py); the codec checks them.

@0xce2236abf8b75156;

struct Job {
  jobid @0 :Int64;
  cmd @1 :Text;
  args @2 :List(Text);
  shell @3 :Bool;
  dir @4 :Text;
  env @5 :List(Text);      # "NAME=value" entries
  host @6 :Text;
  user @7 :Text;
  state @8 :UInt8;         # goq_core.messages.JobState
  attempt @9 :Int64;
  workerid @10 :Text;
  workerhost @11 :Text;
  pid @12 :Int64;
  exitStatus @13 :Int64;   # exit code, or -N for signal N
  submitNs @14 :Int64;
  startNs @15 :Int64;
  endNs @16 :Int64;
  outBytes @17 :Int64;
}

struct Counter {
  name @0 :Text;
  value @1 :Int64;
}

struct Message {
  kind @0 :UInt8;          # goq_core.messages.Kind
  nonce @1 :Data;
  sendtimeNs @2 :Int64;
  replyTo @3 :Data;
  workerid @4 :Text;
  host @5 :Text;
  jobid @6 :Int64;
  attempt @7 :Int64;
  count @8 :Int64;
  waitMs @9 :Int64;
  offset @10 :Int64;
  data @11 :Data;
  text @12 :Text;
  jobs @13 :List(Job);
  counters @14 :List(Counter);
}
