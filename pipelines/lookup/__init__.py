"""The look-up service for authorised agencies (docs/lookup.md).

Rooms, one concept each: ``settings`` (typed settings), ``keys`` (query
normalisation and the vectorised key hash), ``records`` (what the index holds per
subscription, packed and unpacked), ``store`` (databases by URL), ``index`` (build,
swap, read), ``accounts`` (passwords, lockout, sessions), ``audit`` (the hash-chained
log), ``requests`` (verification requests to telcos), ``service`` (who may ask what),
``app`` (HTTP: JSON API and the server-rendered page).
"""
