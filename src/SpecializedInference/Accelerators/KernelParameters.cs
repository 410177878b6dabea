using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using ILGPU;

namespace SpecializedInference.Accelerators;

/// <summary>
/// How ILGPU 1.5.3 passes a kernel's parameters on CUDA, for launching its compiled kernels without its launcher
/// (<see cref="ProgrammaticLauncher"/>): each parameter is one PTX <c>.param</c>; a view is its first element's device
/// address and its length in elements (16 bytes, aligned to 8); a struct is its fields in declaration order, each at its
/// natural alignment, its size rounded up to its largest alignment, as C lays them out (the PTX of the fused matvec
/// shows it: <c>L2Prefetch</c>'s three longs and three ints take <c>[40]</c>, <c>RowPairOutput</c>'s view and int <c>[24]</c>).
/// <see cref="PtxSizes"/> reads the sizes the PTX declares, so a kernel whose layout differs is refused at load, not
/// launched with its arguments in the wrong places.
/// </summary>
public static partial class KernelParameters
{
    private static readonly ConcurrentDictionary<Type, (int Size, int Alignment)> Layouts = new();

    /// <summary>Bytes and alignment of a parameter of type <paramref name="type"/>.</summary>
    /// <exception cref="NotSupportedException">A type ILGPU passes differently or this does not know (bool, references).</exception>
    public static (int Size, int Alignment) Of(Type type) => Layouts.GetOrAdd(type, Compute);

    /// <summary>Writes <paramref name="value"/> at <paramref name="offset"/> of <paramref name="buffer"/>, as the kernel receives it.</summary>
    public static void Write<T>(T value, byte[] buffer, int offset) where T : struct => Writer<T>.Write(value, buffer, offset);

    /// <summary>The writer of one <typeparamref name="T"/>, compiled once: a launch writes its arguments without
    /// reflection or boxing.</summary>
    private static class Writer<T> where T : struct
    {
        public static readonly Action<T, byte[], int> Write = Compile();

        private static Action<T, byte[], int> Compile()
        {
            var value = Expression.Parameter(typeof(T), "value");
            var buffer = Expression.Parameter(typeof(byte[]), "buffer");
            var offset = Expression.Parameter(typeof(int), "offset");
            return Expression.Lambda<Action<T, byte[], int>>(WriteExpression(typeof(T), value, buffer, offset, 0), value, buffer, offset).Compile();
        }
    }

    /// <summary>The byte size of each <c>.param</c> of the single <c>.entry</c> in <paramref name="ptx"/>, in order.</summary>
    public static IReadOnlyList<int> PtxSizes(string ptx)
    {
        var entry = EntryParameters().Match(ptx);
        if (!entry.Success) throw new ArgumentException("no .entry parameter list in the PTX", nameof(ptx));
        return entry.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => Parameter().Match(p) is { Success: true } m
                ? m.Groups["bytes"].Success ? int.Parse(m.Groups["bytes"].Value) : int.Parse(m.Groups["bits"].Value) / 8
                : throw new ArgumentException($"PTX parameter '{p}' is neither .bN nor an .align'ed byte array", nameof(ptx)))
            .ToList();
    }

    private static (int Size, int Alignment) Compute(Type type)
    {
        if (type == typeof(bool)) throw new NotSupportedException("bool kernel parameters: ILGPU's layout of them is not known here; pass an int");
        if (type.IsEnum) return Of(Enum.GetUnderlyingType(type));
        if (type.IsPrimitive || type == typeof(System.Half)) return (System.Runtime.InteropServices.Marshal.SizeOf(type), System.Runtime.InteropServices.Marshal.SizeOf(type));
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(ArrayView<>)) return (16, 8);
        if (!type.IsValueType) throw new NotSupportedException($"{type.Name}: a kernel parameter must be a value type");
        int size = 0, alignment = 1;
        foreach (var field in Fields(type))
        {
            var (s, a) = Of(field.FieldType);
            size = Align(size, a) + s;
            alignment = Math.Max(alignment, a);
        }
        return (Align(size, alignment), alignment);
    }

    /// <summary>Instance fields in declaration order (metadata order is declaration order for a type's own fields).</summary>
    private static IEnumerable<FieldInfo> Fields(Type type) =>
        type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).OrderBy(f => f.MetadataToken);

    internal static int Align(int offset, int alignment) => (offset + alignment - 1) / alignment * alignment;

    private static Expression WriteExpression(Type type, Expression value, ParameterExpression buffer, ParameterExpression offset, int at)
    {
        Expression Offset() => Expression.Add(offset, Expression.Constant(at));
        if (type.IsEnum) return WriteExpression(Enum.GetUnderlyingType(type), Expression.Convert(value, Enum.GetUnderlyingType(type)), buffer, offset, at);
        if (type.IsPrimitive || type == typeof(System.Half))
            return Expression.Call(typeof(KernelParameters).GetMethod(nameof(WriteValue), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(type),
                buffer, Offset(), value);
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(ArrayView<>))
            return Expression.Call(typeof(KernelParameters).GetMethod(nameof(WriteView), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(type.GetGenericArguments()[0]),
                buffer, Offset(), value);
        var writes = new List<Expression>();
        int fieldAt = 0;
        foreach (var field in Fields(type))
        {
            var (s, a) = Of(field.FieldType);
            fieldAt = Align(fieldAt, a);
            writes.Add(WriteExpression(field.FieldType, Expression.Field(value, field), buffer, offset, at + fieldAt));
            fieldAt += s;
        }
        return writes.Count == 0 ? Expression.Empty() : Expression.Block(writes);
    }

    private static void WriteValue<T>(byte[] buffer, int offset, T value) where T : unmanaged => Unsafe.WriteUnaligned(ref buffer[offset], value);

    /// <summary>A view as the kernel receives it: its first element's device address, then its length in elements.</summary>
    private static void WriteView<T>(byte[] buffer, int offset, ArrayView<T> view) where T : unmanaged
    {
        Unsafe.WriteUnaligned(ref buffer[offset], view.IsValid ? Address(view) : 0L);
        Unsafe.WriteUnaligned(ref buffer[offset + 8], view.Length);
    }

    /// <summary>A view's first element on the device (ILGPU keeps its own accessor internal; the interfaces are public).</summary>
    private static long Address<TView>(TView view) where TView : struct, IContiguousArrayView
        => view.Buffer!.NativePtr.ToInt64() + view.IndexInBytes;

    [GeneratedRegex(@"\.entry\s+[\w$]+\s*\(([^()]*)\)")]
    private static partial Regex EntryParameters();

    [GeneratedRegex(@"^\.param\s+(?:\.align\s+\d+\s+\.b8\s+[\w$]+\[(?<bytes>\d+)\]|\.[bsuf](?<bits>\d+)\s+[\w$]+)$")]
    private static partial Regex Parameter();
}
