"""SSLScope as a library for code it did not write: ``sslscope.monitor`` (collapse statistics of
any training loop into the SSLScope run store). Imports ``core`` and ``trainer.store`` only."""
