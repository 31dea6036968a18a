import sys

from lit_llm.cli import main

sys.exit(main())
