import sys

from keras_mhdeblur.cli import main

sys.exit(main())
