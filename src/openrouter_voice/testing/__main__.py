from .upstream import main

main()
