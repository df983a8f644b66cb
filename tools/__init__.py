"""otok.tools"""
