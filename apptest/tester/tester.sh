#!/bin/bash
# Runs every testrunner suite; the pod fails (and so does verification) if any action fails.
set -o pipefail
failed=0
for suite in /tests/*.yaml; do
  echo "SMOKE_TEST running ${suite}"
  testrunner -logtostderr "--test_spec=${suite}" || failed=1
done
exit "${failed}"
