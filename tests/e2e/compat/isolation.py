"""``sitecustomize`` of the previous release's side (copied beside its packages by install.py).

The shared virtualenv holds the current checkout as an editable install, served by finders that
setuptools appends to ``sys.meta_path`` for ``device``, ``cloud``, ``protocol``, ``voxfleet`` and the
skills. The release's folder comes first on ``PYTHONPATH``, so its own packages win; but for a module
that release does not have, those finders still answer: ``import device.voice`` would quietly load the
current code into an old process. Without VoxFleet's editable finders the release's folder is the
only place its interpreters find VoxFleet code, as on a device with only that release installed.
"""

import sys

sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", "").startswith("__editable___voxfleet")]
