"""Pure decision logic (no clock, no I/O): the job document, rules, the evaluation order, fire times."""
