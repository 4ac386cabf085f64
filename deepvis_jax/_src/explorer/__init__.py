"""The explorer: a static site over an atlas (`site`, `features`) and a live local web app (`live`, `server`).

`features` computes each channel's feature visualization with `construct` and caches it per channel on disk;
`site` renders an atlas and those pictures as linked HTML pages (numpy and Pillow only, it never computes);
`live` is the compute core of `deepvis serve` (one compiled program per layer and image size, results cached)
and `server` its HTTP front end (the standard library's threading HTTP server).
"""
