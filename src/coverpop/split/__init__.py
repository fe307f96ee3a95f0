"""Stage dedupe_split: one track per album and per cover, then a grouped, stratified split."""
