namespace SpecializedInference.Model.Safetensors;

/// <summary>The element types the safetensors format defines.</summary>
public enum SafetensorsDtype
{
    Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2,
}

public static class SafetensorsDtypes
{
    /// <summary>Parses the header's dtype string; false for a string the format does not define.</summary>
    public static bool TryParse(string text, out SafetensorsDtype dtype)
    {
        switch (text)
        {
            case "BOOL": dtype = SafetensorsDtype.Bool; return true;
            case "U8": dtype = SafetensorsDtype.U8; return true;
            case "I8": dtype = SafetensorsDtype.I8; return true;
            case "I16": dtype = SafetensorsDtype.I16; return true;
            case "U16": dtype = SafetensorsDtype.U16; return true;
            case "F16": dtype = SafetensorsDtype.F16; return true;
            case "BF16": dtype = SafetensorsDtype.BF16; return true;
            case "I32": dtype = SafetensorsDtype.I32; return true;
            case "U32": dtype = SafetensorsDtype.U32; return true;
            case "F32": dtype = SafetensorsDtype.F32; return true;
            case "F64": dtype = SafetensorsDtype.F64; return true;
            case "I64": dtype = SafetensorsDtype.I64; return true;
            case "U64": dtype = SafetensorsDtype.U64; return true;
            case "F8_E4M3": dtype = SafetensorsDtype.F8_E4M3; return true;
            case "F8_E5M2": dtype = SafetensorsDtype.F8_E5M2; return true;
            default: dtype = default; return false;
        }
    }

    public static string Name(this SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool => "BOOL",
        _ => dtype.ToString(),
    };

    public static int SizeInBytes(this SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool or SafetensorsDtype.U8 or SafetensorsDtype.I8 or SafetensorsDtype.F8_E4M3 or SafetensorsDtype.F8_E5M2 => 1,
        SafetensorsDtype.I16 or SafetensorsDtype.U16 or SafetensorsDtype.F16 or SafetensorsDtype.BF16 => 2,
        SafetensorsDtype.I32 or SafetensorsDtype.U32 or SafetensorsDtype.F32 => 4,
        SafetensorsDtype.F64 or SafetensorsDtype.I64 or SafetensorsDtype.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Whether weights of this dtype can be converted to the engine's f32/f16.</summary>
    public static bool IsFloatWeight(this SafetensorsDtype dtype) =>
        dtype is SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16;
}
