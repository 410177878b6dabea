using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels;

/// <summary>
/// Shape of one layer's paged KV cache: keys and values are each <c>[num_blocks, num_kv_heads, block_size, head_dim]</c>
/// in <see cref="Dtype"/>.
/// </summary>
public sealed record PagedKvCacheLayout(int NumBlocks, int NumKvHeads, int BlockSize, int HeadDim, KvDtype Dtype)
{
    public int BytesPerElement => Dtype == KvDtype.F16 ? 2 : 4;

    /// <summary>Elements of one block of one buffer (keys or values): num_kv_heads * block_size * head_dim.</summary>
    public long ElementsPerBlock => (long)NumKvHeads * BlockSize * HeadDim;

    /// <summary>Bytes of the keys (or of the values) of one layer.</summary>
    public long BytesPerBuffer => NumBlocks * ElementsPerBlock * BytesPerElement;

    /// <summary>Throws a clear error when the layout cannot hold a paged cache the kernels can read.</summary>
    public void Validate()
    {
        if (NumBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(NumBlocks), NumBlocks, "KV cache num_blocks must be positive.");
        if (NumKvHeads <= 0) throw new ArgumentOutOfRangeException(nameof(NumKvHeads), NumKvHeads, "KV cache num_kv_heads must be positive.");
        if (BlockSize <= 0) throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "KV cache block_size must be positive.");
        if (HeadDim <= 0 || HeadDim % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(HeadDim), HeadDim, "KV cache head_dim must be a positive multiple of 8 (16-byte chunks).");
    }
}

/// <summary>One layer's paged KV cache on a device: the key and value buffers and the <see cref="PagedKvLayer"/> over them.</summary>
public sealed class PagedKvCacheBuffer : IDisposable
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _keys;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _values;

    private PagedKvCacheBuffer(PagedKvCacheLayout layout, MemoryBuffer1D<byte, Stride1D.Dense> keys, MemoryBuffer1D<byte, Stride1D.Dense> values)
    {
        Layout = layout;
        _keys = keys;
        _values = values;
    }

    public PagedKvCacheLayout Layout { get; }

    /// <summary>The views the attention kernels take.</summary>
    public PagedKvLayer Layer => new(_keys.View, _values.View);

    /// <summary>Allocates a zeroed cache layer.</summary>
    public static PagedKvCacheBuffer Allocate(Accelerator accelerator, PagedKvCacheLayout layout)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(layout);
        layout.Validate();
        var keys = accelerator.Allocate1D<byte>(layout.BytesPerBuffer);
        try
        {
            var values = accelerator.Allocate1D<byte>(layout.BytesPerBuffer);
            keys.MemSetToZero();
            values.MemSetToZero();
            return new PagedKvCacheBuffer(layout, keys, values);
        }
        catch
        {
            keys.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
