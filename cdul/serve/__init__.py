"""cdul-serve: browse, search and check a store's labels in a browser.

Pages and their JSON API (the same data) over one or several stores: per class, the images
ranked by a label round (or S_g, S_ag, y0) with their decided labels next to the ground
truth; per image, its tiles, its scores over the rounds and its nearest neighbours; search
by text or by example; an overview with the pseudo-label mAP of every round. Only images
listed in a store are ever read, by row; see README.md, "Browse the labels".
"""

from .app import Served, create_app
from .catalog import Catalog, RequestError
from .pictures import Pictures, check_cache_dir
from .query import Finder

__all__ = ["Catalog", "Finder", "Pictures", "RequestError", "Served", "check_cache_dir", "create_app"]
