"""``python -m jobs.rules --rule ID``: the rule job (:func:`jobs.rules.job.main`); ``iotflink
rules deploy`` submits it to the cluster with ``flink run -pym jobs.rules``."""

import sys

from jobs.rules.job import main

if __name__ == "__main__":
    sys.exit(main())
