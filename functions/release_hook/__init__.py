"""CodeDeploy pre-traffic hook: self-test a new function version before it gets traffic."""
