"""What telcos receive: correction lists, their reason texts, and the transport."""
