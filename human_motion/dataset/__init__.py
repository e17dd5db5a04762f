"""Tools that read a finished build: hm stats, hm verify, hm select."""
