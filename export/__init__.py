"""otok.export"""
