"""One module per schema revision, ``NNNN_<what>.py``, its ``revision`` the same four digits (``ledger.schema``)."""
