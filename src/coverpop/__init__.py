"""coverpop: does the album cover predict a track's popularity?"""

__version__ = "0.1.0"
