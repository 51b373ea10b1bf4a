"""cxrl.methods"""
