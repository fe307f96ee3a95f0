"""Stage scrape_images: the resumable scrape engine, one resolver per source, HTTP, image checks."""
