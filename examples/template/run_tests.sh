#!/usr/bin/env bash
# Runs the unit tests and prints a one-line summary that borg recognises.
out=$(python3 -m unittest discover -v -p 'test_*.py' 2>&1); code=$?
echo "$out"
passed=$(grep -c '\.\.\. ok$' <<<"$out")
failed=$(grep -cE '\.\.\. (FAIL|ERROR)$' <<<"$out")
echo "$passed passed, $failed failed"
exit $code
