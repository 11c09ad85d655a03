"""The tools around the node: bag I/O, evaluation, replay, the demo, the bench, the one SGBM
baseline, figures and the synthetic scene generator. The run-time core (``stereonet_ros``:
model, engine, node, pipeline, messages) never imports them."""
