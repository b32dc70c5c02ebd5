"""Reading one telco's export: decoding, column mapping, normalisation, quarantine."""
