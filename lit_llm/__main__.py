import sys

from lit_llm.cli.main import main

sys.exit(main())
