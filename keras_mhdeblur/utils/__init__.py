"""Small helpers the library and the commands share, each written once.

- `files`: atomic writes (a file or a folder appears whole or not at all) with normal permissions.
- `sizes`: the one parser of "HxW" image sizes.
- `progress`: progress lines that suit both a terminal and a log file.
"""
