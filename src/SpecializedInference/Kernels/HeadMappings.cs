namespace SpecializedInference.Kernels;

/// <summary>How many query heads one thread group serves from each K/V load: the kernel variant of
/// <see cref="HeadMapping"/>, as a struct type parameter so each variant compiles on its own.</summary>
public interface IHeadMapping
{
    int HeadsPerGroup(AttentionDims dims);
}

/// <summary>GQA/MQA: a K/V tile serves every query head of its group (or of a chunk of it).</summary>
public struct GroupedHeads : IHeadMapping
{
    public int HeadsPerGroup(AttentionDims dims) => dims.HeadsPerGroup;
}

/// <summary>MHA expansion: each query head loads its K/V head on its own, as if K/V were repeated per head.</summary>
public struct ExpandedHeads : IHeadMapping
{
    public int HeadsPerGroup(AttentionDims dims) => 1;
}
