"""Names vulture reports as unused that are used where it does not look.

    vulture src/isnet vulture_whitelist.py

Each line uses one name, with why it is used. Never imported: the file only names them.
"""


class _Whitelist:
    """Any attribute (as vulture's own ``whitelist_utils.Whitelist``): lets this file run."""

    def __getattr__(self, _name):
        return None


_ = _Whitelist()

# isnet.deploy.export.control_flow_ops: a check for the tests (tests/test_export.py asserts that an
# exported graph has no If/Loop/Scan node), which vulture does not scan with src/isnet.
_.control_flow_ops

# isnet.deploy.runtimes.onnxruntime: properties of onnxruntime.SessionOptions, set in OnnxSegmentor and
# read by ONNX Runtime when it builds the session.
_.graph_optimization_level
_.intra_op_num_threads
