"""goq's built-in codecs (`raw`, the default, and `capnp`) and ciphers (`aes-gcm`, the default,
and `none` for tests); see `goq_codecs.plugin` for how they register.
"""
