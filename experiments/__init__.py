"""Papers: one folder per paper (its slug), each a package that imports the library
`shortsci_bench`, never the other way round. See `shortsci_bench/registry.py`."""
