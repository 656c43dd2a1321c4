from ringward.cli.main import run

run()
