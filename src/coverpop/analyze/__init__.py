"""Stage analyze: what a person sees on a cover (faces, colour, text) and its effect sizes."""
