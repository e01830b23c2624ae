from mongars.cli import main

main()
