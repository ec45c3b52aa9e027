"""mkdocs-gen-files script: writes the pages that atlas.site plans from the Survey.

Under `atlas site` / `atlas build` the Survey is the one the command loaded, handed over in the same
process; under a bare `mkdocs build` or `mkdocs serve` it is loaded here. The notebooks are run first
(cached under build/notebooks/). Any problem stops the build with one `path:line: what; expected`
line per problem.
"""

from pathlib import Path

import mkdocs_gen_files

from atlas.site import generate_pages

config = mkdocs_gen_files.config
site = generate_pages(Path(config.config_file_path).parent)
for path, content in site.files.items():
    with mkdocs_gen_files.open(path, "wb" if isinstance(content, bytes) else "w") as fh:
        fh.write(content)
config.nav = site.nav
