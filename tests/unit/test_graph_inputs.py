"""CUDA-graph static inputs: loading a decode batch from its packed table (one copy) fills the
same rows as loading field by field, and padded rows are reset. Runs on CPU tensors."""

import torch

from sglang.runtime.model_executor.cuda_graph_runner import StaticInputs
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode


def _decode_batch(table: torch.Tensor, packed: bool) -> ForwardBatch:
    rows = table.unbind(0)
    return ForwardBatch(
        forward_mode=ForwardMode.DECODE, batch_size=table.shape[1], input_ids=rows[0], positions=rows[1],
        req_pool_indices=rows[2], seq_lens=rows[3], out_cache_loc=rows[4], seq_lens_cpu=rows[3].tolist(),
        req_to_token_pool=None, kv_pool=None, decode_table=table if packed else None,
    )


def test_packed_and_field_loads_agree_and_pad():
    gen = torch.Generator().manual_seed(0)
    padding_row = 9
    big = torch.randint(1, 1000, (5, 7), generator=gen)
    small = torch.randint(1, 1000, (5, 3), generator=gen)
    tables = []
    for packed in (False, True):
        inputs = StaticInputs.allocate(8, padding_row, "cpu")
        inputs.load(_decode_batch(big, packed), graph_bs=8)
        inputs.load(_decode_batch(small, packed), graph_bs=4)  # rows 3.. held the larger batch
        tables.append(inputs.table.clone())
        assert torch.equal(inputs.table[:, :3], small)
        assert inputs.req_pool_indices[3].item() == padding_row and inputs.seq_lens[3].item() == 1
        assert inputs.out_cache_loc[3].item() == 0 and inputs.input_ids[3].item() == 0
    assert torch.equal(tables[0], tables[1])
