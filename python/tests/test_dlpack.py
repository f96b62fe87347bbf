import numpy as np
import pytest

import metatape as mt


def test_numpy_from_dlpack_shares_memory():
    t = mt.zeros([2, 3], dtype="float64")
    a = np.from_dlpack(t)  # read-only on NumPy < 2.1 (unversioned DLPack), so write through the tensor
    t.numpy()[1, 1] = 3.0
    assert a[1, 1] == 3.0
    assert np.shares_memory(a, t.numpy())
    assert t.__dlpack_device__() == (1, 0)


def test_from_dlpack_of_a_numpy_array_shares_memory():
    a = np.zeros(4, dtype=np.float32)
    t = mt.from_dlpack(a)
    a[2] = 1.5
    assert t.tolist()[2] == 1.5


def test_torch_round_trip_shares_memory(torch):
    t = mt.tensor(np.arange(6.0).reshape(2, 3))
    tt = torch.from_dlpack(t)
    assert tt.dtype == torch.float64 and tuple(tt.shape) == (2, 3)
    tt[0, 0] = 100.0
    assert t.tolist()[0][0] == 100.0
    back = mt.from_dlpack(tt)
    back.numpy()[1, 2] = -1.0
    assert tt[1, 2].item() == -1.0
    assert t.tolist()[1][2] == -1.0


def test_torch_tensor_into_metatape_ops_and_lifetime(torch):
    src = torch.arange(4, dtype=torch.float32)
    t = mt.from_dlpack(src)
    del src  # the metatape tensor keeps torch's storage alive
    assert mt.sum(t * 2.0).item() == 12.0
    labels = mt.from_dlpack(torch.tensor([0, 2, 1]))
    assert labels.dtype == "int64"


def test_from_dlpack_refuses_unsupported_dtypes(torch):
    with pytest.raises(mt.Error, match="float16 cannot be shared"):
        mt.from_dlpack(torch.zeros(3, dtype=torch.float16))
