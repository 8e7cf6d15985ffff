"""Shared test data of the classic methods."""

# Mitchell, "Machine Learning", 1997, Table 2.1: the EnjoySport training examples.
ENJOY_SPORT = """\
Sky,AirTemp,Humidity,Wind,Water,Forecast,EnjoySport
Sunny,Warm,Normal,Strong,Warm,Same,Yes
Sunny,Warm,High,Strong,Warm,Same,Yes
Rainy,Cold,High,Strong,Warm,Change,No
Sunny,Warm,High,Strong,Cool,Change,Yes
"""
