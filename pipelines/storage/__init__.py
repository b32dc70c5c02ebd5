"""Where data is kept: run folders, atomic files, object stores, workbooks."""
