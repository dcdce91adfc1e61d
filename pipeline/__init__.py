"""relaywatch: find Microsoft 365 tenants relaying spam through EOP, and say block or unblock.

Data flows one way: formats → lake → queries → report → mail.
"""

__version__ = "0.1.0"
