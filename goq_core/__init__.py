"""goq's core: the pure scheduling kernel, the plugin system, config and keys, and the role runtimes.

Nothing here imports a transport, codec or cipher library; those come in as plugins.
"""

__version__ = "0.1.0"
