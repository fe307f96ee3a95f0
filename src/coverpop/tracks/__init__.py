"""Stages fetch_csv and select_tracks: where the tracks table comes from, its schema, choosing N tracks."""
