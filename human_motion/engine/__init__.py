"""The build engine: plan the inputs, run the stages (in this process or on Ray), write the shards."""
