# `make docs`: the API reference and tutorial, built from the docstrings; warnings are errors.
.PHONY: docs test
docs:
	python3 -m sphinx -W --keep-going -b html docs docs/_build/html
test:
	python3 -m pytest -q tests
