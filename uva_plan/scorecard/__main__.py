from uva_plan.scorecard.cli import main

main()
