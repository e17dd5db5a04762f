"""The curation stages: each reads declared fields of a row and writes scores and members."""
