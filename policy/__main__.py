"""The rancher-ha policy pack. Only this file constructs the PolicyPack (the
constructor serves until the engine stops it); the policies live in an importable
module so they can be unit-tested."""

from pulumi_policy import EnforcementLevel, PolicyPack

from rancher_ha_policies import POLICIES

PolicyPack(name="rancher-ha", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
