"""cellgrad's command-line interface; the library lives in the packages derive, codegen, generated."""
