# qgis_process prints its progress as ticks ("0", ".", "10", …, "100") without line breaks, so they run into
# the log lines that follow (".epoch 38/50", "80epoch 42/50"). scripts/demo.sh pipes the output through this
# (sed -E): ticks at the start of a line, before a word, are dropped; QGIS's own "…100 - done." line stays.
s/^((100|[1-9]0|0)|\.)+([[:alpha:]/…])/\3/
