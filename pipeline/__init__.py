"""relaywatch: find Microsoft 365 tenants relaying spam through EOP, and say block or unblock.

Data flows one way: formats → lake → queries → report → mail. Importing the package changes
nothing in the process (no allocator or thread settings): it also runs inside other
processes. The command line opts into its own tuning (pipeline.tuning).
"""

__version__ = "0.1.0"
