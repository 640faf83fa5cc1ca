import sys

from mmoral_pipeline.synth.cli import main

sys.exit(main())
