"""fashionrec: visual "more like this" recommendations for fashion catalogues."""

__version__ = "0.1.0"
