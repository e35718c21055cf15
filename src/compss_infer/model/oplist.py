"""The op allow-list for the model safety audit (data only).

A frozen inference graph needs arithmetic, array, neural-network, image and control-flow ops.
Anything else (file I/O, Python callbacks, networking, summaries, variables, queues) is refused
unless the user passes ``--allow-unsafe-ops``.  Image decoding is allowed only in graphs whose
input is an image path (they decode inside the graph), and ``ReadFile`` only where the file name
it reads is that path: fed by the path input, directly or through the ops of ``PATH_CHAIN``, in the
graph itself (a ``ReadFile`` inside a library function is refused: what feeds it is not traced).
Every name here is checked against TensorFlow's op registry by the tests.
"""
from __future__ import annotations

from typing import Callable

_STRUCTURE = """
Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp StopGradient PreventGradient
Snapshot EnsureShape CheckNumerics CheckNumericsV2 Assert ControlTrigger
If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall StatefulPartitionedCall
Switch Merge Enter Exit NextIteration LoopCond RefSwitch RefEnter RefExit RefMerge RefNextIteration
"""

_MATH = """
Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod Mod TruncateDiv TruncateMod
Maximum Minimum Neg Abs Sign Square Sqrt Rsqrt Reciprocal Inv Exp Expm1 Log Log1p Pow
SquaredDifference Tanh Sigmoid Sin Cos Tan Atan Atan2 Asin Acos Sinh Cosh Asinh Acosh Atanh
Erf Erfc Erfinv Floor Ceil Round Rint IsNan IsInf IsFinite Less LessEqual Greater GreaterEqual
Equal NotEqual ApproximateEqual LogicalAnd LogicalOr LogicalNot Select SelectV2 Cast Bitcast
ComplexAbs Real Imag Conj
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 SparseMatMul Einsum
Sum Prod Mean Max Min ArgMax ArgMin All Any EuclideanNorm Cumsum Cumprod CumulativeLogsumexp
ClipByValue Range LinSpace Xdivy Xlogy Xlog1py BiasAdd BiasAddV1 Betainc Lgamma Digamma
BitwiseAnd BitwiseOr BitwiseXor Invert LeftShift RightShift PopulationCount SegmentSum SegmentMean
SegmentMax SegmentMin UnsortedSegmentSum UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
"""

_NN = """
Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax LogSoftmax TopK TopKV2 InTopK InTopKV2 LRN
L2Loss Conv Conv2D Conv3D Conv2DBackpropInput Conv3DBackpropInputV2 DepthwiseConv2dNative
DepthwiseConv2dNativeBackpropInput MaxPool MaxPoolV2 MaxPool3D MaxPoolWithArgmax AvgPool AvgPool3D
FractionalAvgPool FractionalMaxPool FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3
BatchNormWithGlobalNormalization FusedPadConv2D FusedResizeAndPadConv2D Dilation2D
NthElement QuantizeV2 Dequantize QuantizeAndDequantizeV2 QuantizeAndDequantizeV3
QuantizeAndDequantizeV4 FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars
FakeQuantWithMinMaxVarsPerChannel
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal
StatelessRandomUniform StatelessRandomNormal StatelessTruncatedNormal StatelessRandomUniformV2
StatelessRandomNormalV2 StatelessRandomUniformIntV2 StatelessRandomGetKeyCounter
StatelessRandomGetAlg
"""

_ARRAY = """
Reshape Squeeze ExpandDims Transpose ConjugateTranspose Pack Unpack Concat ConcatV2 ConcatOffset
Split SplitV Slice StridedSlice Gather GatherV2 GatherNd ScatterNd TensorScatterUpdate
TensorScatterAdd Tile Pad PadV2 MirrorPad Fill ZerosLike OnesLike Shape ShapeN Size Rank
BroadcastTo BroadcastArgs BroadcastGradientArgs Where Reverse ReverseV2 ReverseSequence OneHot
DepthToSpace SpaceToDepth SpaceToBatchND BatchToSpaceND SpaceToBatch BatchToSpace Unique UniqueV2
InvertPermutation Bucketize MatrixBandPart MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart
MatrixDiagPartV2 MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 Roll UpperBound
LowerBound DynamicStitch ParallelDynamicStitch DynamicPartition Empty ListDiff SetSize
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3
TensorArraySizeV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArrayCloseV3
TensorListReserve TensorListSetItem TensorListGetItem TensorListStack TensorListFromTensor
TensorListLength TensorListElementShape TensorListPushBack TensorListPopBack TensorListGather
TensorListScatterIntoExistingList TensorListConcatV2 TensorListSplit TensorListResize
EmptyTensorList
"""

_IMAGE = """
ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate CropAndResize
AdjustContrastv2 AdjustHue AdjustSaturation RGBToHSV HSVToRGB NonMaxSuppression
NonMaxSuppressionV2 NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
CombinedNonMaxSuppression ExtractImagePatches ExtractGlimpseV2 DrawBoundingBoxesV2
"""

_STRINGS = """
StringJoin StringLength Substr StringSplit StringSplitV2 StaticRegexFullMatch RegexFullMatch
StaticRegexReplace RegexReplace StringStrip StringLower StringUpper AsString StringToNumber
StringFormat StringToHashBucketFast ReduceJoin
"""

# Only in graphs whose input is an image path: they read and decode the file inside the graph.
PATH_INPUT_OPS = frozenset("""
ReadFile DecodeImage DecodeJpeg DecodePng DecodeBmp DecodeGif DecodeWebP DecodeAndCropJpeg
ExtractJpegShape DecodeRaw
""".split())

# Ops through which a file name may still be "the path the run fed": they select, reshape, pass
# along or trim strings, and can only build a name out of the path's own characters.  The value:
# which data inputs carry the string (None: every one); the others are shapes, indices or flags.
# Regex replacements, formatting and number-to-string ops are left out: they can write any name.
PATH_CHAIN: dict[str, Callable[[int], range | tuple[int, ...]] | None] = {
    "Identity": lambda n: (0,), "Snapshot": lambda n: (0,), "EnsureShape": lambda n: (0,),
    "IdentityN": None, "Reshape": lambda n: (0,), "ExpandDims": lambda n: (0,), "Squeeze": lambda n: (0,),
    "StridedSlice": lambda n: (0,), "Slice": lambda n: (0,), "Gather": lambda n: (0,),
    "GatherV2": lambda n: (0,), "Unpack": lambda n: (0,), "Pack": None, "ConcatV2": lambda n: range(n - 1),
    "Switch": lambda n: (0,), "Merge": None, "Enter": lambda n: (0,), "Exit": lambda n: (0,),
    "NextIteration": lambda n: (0,), "StringStrip": lambda n: (0,), "StringLower": lambda n: (0,),
    "StringUpper": lambda n: (0,), "Substr": lambda n: (0,), "StringJoin": None,  # with an empty separator
}

ALLOWED_OPS = frozenset(" ".join([_STRUCTURE, _MATH, _NN, _ARRAY, _IMAGE, _STRINGS]).split())

# Why an op that is not allowed is dangerous, for the refusal message (first match wins).
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("PyFunc", "PyFuncStateless", "EagerPyFunc"), "runs Python code"),
    (("WriteFile", "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "DatasetToTFRecord",
      "ExperimentalDatasetToTFRecord", "DistributedSave", "PrintV2", "Print"), "writes files or streams"),
    (("ReadFile", "Restore", "RestoreV2", "RestoreSlice", "MatchingFiles", "ImmutableConst"), "reads files"),
    (("RemoteCall", "Send", "Recv", "_Send", "_Recv"), "talks to other processes or hosts"),
    (("FileSystemSetConfiguration",), "changes file-system settings"),
)
_REASON_PARTS: tuple[tuple[str, str], ...] = (
    ("Summary", "writes summaries to files"),
    ("Reader", "reads files"),
    ("Dataset", "reads data sources"),
    ("Debug", "writes debug dumps"),
    ("DataService", "talks to other hosts"),
    ("Collective", "talks to other processes or hosts"),
    ("Rpc", "talks to other hosts"),
    ("Variable", "uses variables: freeze the graph first"),
    ("VarHandle", "uses variables: freeze the graph first"),
    ("Queue", "uses queues"),
    ("Decode", "decodes files: allowed only when the input is an image path"),
)


def reason(op: str) -> str:
    """A short phrase saying why ``op`` is refused."""
    for names, why in _REASONS:
        if op in names:
            return why
    for part, why in _REASON_PARTS:
        if part in op:
            return why
    return "not on the inference allow-list"


def is_allowed(op: str, path_input: bool) -> bool:
    return op in ALLOWED_OPS or (path_input and op in PATH_INPUT_OPS)
